"""Static HTML reports: the seed post's pictures for any model, in one file that opens anywhere.

    >>> report = build_report(ckpt, span, result, features)   # result: a ProbeResult, or None
    >>> report = build_report(ckpt, span, result, features, max_chars=2000, live=True)   # ReportConfig fields
    >>> report.save("report.html")                             # one self-contained file (force=True replaces one)
    >>> report                                                 # in Jupyter: the page, in a frame
    >>> report.view("units")                                   # one section of it
    >>> report.charts["gates"]                                 # any chart, as an altair object
    >>> write_report("wp.pt", "report.html", {"text_path": "warpeace.txt"}, {"names": ["in_quote"]})
    ...                                       # the `neuroscope report` command: label, rank, build, save

Sections, in order: 1 model card (config, parameters, test loss, loss curves); 2 samples through
training; 3 neuron ranking per feature (table, bar chart of r, top-k probe curve); 4 the excerpt
coloured by each selected unit (its shown value, stats.SHOWN), with the feature's labels
underlined and a picker among the feature's top units, then (on 1,500 characters or more) each
unit's best explanation; 5 predictions (the text coloured by the probability of each actual
character, and the model's top 5 guesses under each character); 6 activation inside vs outside
each feature; 7 gate saturation per layer (LSTM and GRU); with a match result, a match section.
With live=True, a live section after the predictions: the model itself runs in the page (_live).
With dictionary= (a neuroscope.dictionary of the model), its latents take the units' place: the
ranking (of a probe over them), the pickers, the text coloured by a latent's activation from 0 to
its largest on the excerpt, the distributions where it is on; the gate section and a live page,
which cannot show latents, say so in a line.

Content is built first (`Report.sections`, `Report.data`, `Report.charts`), then rendered by _page.
The pieces: _excerpt reads the numbers off the shown excerpt in one pass of the model (unit values,
gate saturation, guesses, and the most variable units when nothing else picks them), _sections turns
them into sections, _charts draws the altair charts. Sections are plain data that a page macro lays
out, except the explanations and the match section (kind "html"), which carry an HTML fragment
their function wrote and escaped. Only the shown excerpt (at most `max_chars` characters) is read,
one chunk at a time; _excerpt says what memory it keeps.
"""
from ._build import Report, build_report
from ._config import ReportConfig
from ._demo import DemoResult, run_demo
from ._write import write_report

__all__ = ["DemoResult", "Report", "ReportConfig", "build_report", "run_demo", "write_report"]
