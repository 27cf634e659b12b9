"""Fakes of what ralph talks to, served on 127.0.0.1 for the tests."""
