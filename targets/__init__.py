"""Device target files (*.toml), shipped inside the edgekit package as edgekit._targets."""
