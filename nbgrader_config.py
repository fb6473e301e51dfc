"""nbgrader configuration for the saliency course (the course root is this folder)."""

c = get_config()  # noqa: F821 - provided by nbgrader

c.CourseDirectory.course_id = "saliency"
c.CourseDirectory.root = __import__("os").path.dirname(__import__("os").path.abspath(__file__))

# Generated files (figures, caches) never go into the student version.
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback", "*.png", "*.pdf"]

# Student versions: solutions become a prompt, hidden tests disappear, outputs are cleared.
c.ClearSolutions.code_stub = {
    "python": "# YOUR CODE HERE\nraise NotImplementedError()",
}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"

# Grading is `course grade` (sandboxed; README, 'Grading'), not `nbgrader autograde`, which would run student code
# unconfined. `course grade` reads one setting of this file: the least time each cell gets, in seconds (a cell
# gets 10x its solution's time when that is more). `course grade --cell-timeout N` overrides it for one run;
# the whole notebook's limit is `--notebook-timeout`, its memory `--memory-mib`. At a cell's limit the kernel is
# always interrupted, and killed 5 s later if the cell goes on; stderr costs nothing (results are judged, not
# printed text), so nbgrader's interrupt_on_timeout, raise_on_iopub_timeout and IgnorePattern have no effect on
# it and are not set here (`course grade` names any such setting it finds).
c.Execute.timeout = 60

# Feedback never shows hidden tests.
c.GenerateFeedback.preprocessors = [
    "nbgrader.preprocessors.GetGrades",
    "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor",
    "nbgrader.preprocessors.ClearHiddenTests",
]

# formgrader shows the autograded notebooks in the instructor's browser: never run what a student's notebook
# holds (HTML and scripts in markdown cells or outputs).
c.HTMLExporter.sanitize_html = True
