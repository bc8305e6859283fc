"""The plumbing every layer may use: one error type, atomic files, folder locks, secret redaction, the
flag parsers, paired statistics, the meta-prompt templates and the optimizer client (litellm)."""
