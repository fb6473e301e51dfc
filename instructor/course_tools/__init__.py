"""Instructor tools for the saliency-map course.

Not installed for students (it is a separate distribution from ``helpers``):
it holds the reference generation, the grading pipeline and a fast SmoothGrad
that would answer the homework.
"""
