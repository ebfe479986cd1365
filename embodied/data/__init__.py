"""Demonstrations: scripted collection, the robomimic-format HDF5 files, and the reader."""
