"""Eyeglasses: a synthetic product catalogue and a virtual try-on renderer (issue 7, glasses search)."""
