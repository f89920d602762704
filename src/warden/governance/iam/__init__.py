"""AWS IAM: authorization details, policy evaluation and privilege-escalation analysis."""
