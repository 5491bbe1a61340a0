"""`make bench`: shield's performance on real photos, against baselines measured in the same run."""
