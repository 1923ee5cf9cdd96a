"""nextlaw's task YAMLs and embedded corpus, installed as the package ``nextlaw_task.tasks``."""
