"""Run bodies behind train.py and evaluate.py, run folders and the job wrapper."""
