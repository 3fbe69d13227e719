"""The evaluation harness of the built-in model (``zaoxiang eval``).

    clf = ObjectClassifier.load()                     identity judge (shipped weights)
    scorer = Scorer(clf)                              per-category scorers
    report = evaluate(runner_or_name, items, ...)     -> EvalReport (table, JSON, contact sheet)
"""
