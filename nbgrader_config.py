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

# Autograding: each cell gets a time limit; a student's endless loop must not abort the class.
c.Execute.timeout = 120
c.Execute.interrupt_on_timeout = True
c.Execute.raise_on_iopub_timeout = False

# Library warnings printed to stderr would otherwise zero a test cell.
c.IgnorePattern.pattern = r"(?s).*(Warning|warn).*"

# Feedback never shows hidden tests.
c.GenerateFeedback.preprocessors = [
    "nbgrader.preprocessors.GetGrades",
    "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor",
    "nbgrader.preprocessors.ClearHiddenTests",
]

# formgrader shows the autograded notebooks in the instructor's browser: never run what a student's notebook
# holds (HTML and scripts in markdown cells or outputs).
c.HTMLExporter.sanitize_html = True
