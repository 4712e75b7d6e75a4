"""The shipped YAML files: the default configuration, reason texts, playbooks and the `churn init` starter."""
