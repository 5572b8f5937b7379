"""Evaluation metrics: TuSimple and CULane-style lane metrics, COCO detection AP, distance
error. Pure functions over arrays and dicts; `perception evaluate` wires them to data."""
