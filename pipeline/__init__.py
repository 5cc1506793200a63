"""Domain-adaptive BERT pre-training (MLM + NSP) on the Hugging Face stack."""

__version__ = "0.1.0"
