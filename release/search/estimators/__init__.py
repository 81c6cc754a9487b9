"""Cheap search fitness: estimate a candidate's fitness from a few items (IRT anchors) or race a generation.

    irt.py      item response theory: fit items, pick anchors, estimate from anchor answers (pure numpy/scipy)
    race.py     racing a generation on items until every candidate's rank is settled (pure numpy)
    scoring.py  both on the live model through the search's evaluator, with the tokens they saved
"""
