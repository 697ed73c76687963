"""The gate itself: agents and their tokens, proposing, evaluating under the policy, the policy store,
and the one representation of an action that the API, webhooks and live pages share."""
