"""A test-only app: the database cleanup between transactional tests.

See management/commands/flush.py.
"""
