"""The console scripts: embodied-data, embodied-train, embodied-eval, embodied-bench."""
