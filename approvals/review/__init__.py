"""The reviewer's desk: the queue, one action, claims, decisions, labels, remembered approvals,
deadlines (escalation and expiry), and the live updates of open pages."""
