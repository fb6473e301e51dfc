"""Instructor tools for the saliency-map course.

Not installed for students (it is a separate distribution from ``helpers``):
it holds the reference generation, the grading pipeline and a fast SmoothGrad
that would answer the homework, and the code of the notebooks beyond the lab.

* :mod:`course_tools.cli` - the ``course`` command;
* :mod:`course_tools.references`, :mod:`course_tools.release`, :mod:`course_tools.colab` - building the course;
* :mod:`course_tools.grading`, :mod:`course_tools.classroom`, :mod:`course_tools.sandbox_kernel`,
  :mod:`course_tools.demo_class` - grading a class;
* :mod:`course_tools.smoothgrad` - the lab's SmoothGrad, fast, on CPU or GPU;
* :mod:`course_tools.attribution`, :mod:`course_tools.sanity` - the wider family of gradient methods and the
  model-randomisation sanity checks, for the companion notebooks.
"""
