"""Internal and unstable: nothing here is subject to any stability guarantee."""
