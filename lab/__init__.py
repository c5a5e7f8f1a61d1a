"""rlaif-lab: prompt engineering and AI-labeler alignment, after RLAIF (arXiv 2309.00267).

Data flows one way through the modules:
data -> prompts -> backends -> label (preference) -> metrics -> run -> sweep -> reports
(tables, plots, report.html) -> cli.
"""

__version__ = "0.1.0"
