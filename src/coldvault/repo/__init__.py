"""The repository format: chunking, keys and sealing, packs, index, listings and manifests."""
