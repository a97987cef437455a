"""A lean DeepSpeed trainer for continued pretraining on refinery shards."""
