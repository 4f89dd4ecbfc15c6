"""Face restoration models, weights, face pipeline, data and degradations.

Importing this package is cheap: sub-modules are imported where they are used.
"""
