"""Instructor tools for the saliency-map course.

Not installed for students (it is a separate distribution from ``helpers``):
it holds the reference generation, the grading pipeline, publishing the
student repository and a fast SmoothGrad that would answer the homework. The
code of the notebooks beyond the lab lives in the student-side package
``beyond``, published only after the homework.

* :mod:`course_tools.cli` - the ``course`` command;
* :mod:`course_tools.references`, :mod:`course_tools.release`, :mod:`course_tools.colab` - building the course;
* :mod:`course_tools.publish` - the student repository (``course publish``) and its leak scan;
* :mod:`course_tools.runner` - the one notebook runner (the instructor's notebooks and the students');
  :mod:`course_tools.nbgrader_cells` - nbgrader's roles of a cell, read safely;
* :mod:`course_tools.grading`, :mod:`course_tools.classroom`, :mod:`course_tools.sandbox`,
  :mod:`course_tools.demo_class` - grading a class;
* :mod:`course_tools.smoothgrad` - the lab's SmoothGrad, fast, on CPU or GPU;
* :mod:`course_tools.attribution`, :mod:`course_tools.sanity` - aliases of :mod:`beyond.attribution` and
  :mod:`beyond.sanity`, where they moved.
"""
