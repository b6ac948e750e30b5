"""The index: choosing a FAISS index, the folder on disk, building it and searching it."""
