"""The input side: manifests, video decoding, pose extraction and pose files, model features."""
