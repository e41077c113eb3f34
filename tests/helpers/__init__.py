"""Builders shared by the tests (tiny models, test doubles, small data sets); no tests here.

Test modules import from this package, never from one another.
"""
