"""`perception monitor-profile` and `perception monitor`: the training profile the loop's
monitor compares against (serving/monitor.py), and a drift report on any input.

    perception monitor-profile --data data/sim --splits data/splits.json \\
        --model models/perception.onnx --out models/perception.monitor.json
    perception monitor data/sim --splits data/splits.json --model models/perception.onnx \\
        --out-dir reports/monitor/test

The profile is binned from the property values the loop's monitor measured on the training
split's frames (profile.py); the report scores a run against it (report.py).
"""
