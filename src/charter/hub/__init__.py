"""Publishing to the Hugging Face Hub: the export folder, the dataset card, provenance, loading back."""
