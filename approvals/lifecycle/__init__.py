"""An action's lifecycle: the transition table and the one function that applies a transition
(``transitions``), the audit log it writes (``audit``, ``audit_chain``), the outbox that announces
each change after its commit (``outbox``) and the channels it announces on (``events``)."""
