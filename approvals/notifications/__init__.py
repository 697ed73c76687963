"""Notifications of held actions (contract §6.3): e-mail to a type's ``notify_emails``, Slack
messages with approve / reject buttons, and the clicks on those buttons applied as reviewers'
decisions. Started by the outbox's fan-out (approvals.lifecycle.outbox), sent by the worker."""
