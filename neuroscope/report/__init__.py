"""Static HTML reports: the seed post's pictures for any model, in one file that opens anywhere.

    >>> report = build_report(ckpt, span, result, features)   # result: a ProbeResult, or None
    >>> report.save("report.html")                             # one self-contained file (force=True replaces one)
    >>> report                                                 # in Jupyter: the page, in a frame
    >>> report.view("units")                                   # one section of it
    >>> report.charts["gates"]                                 # any chart, as an altair object

Sections, in order: 1 model card (config, parameters, test loss, loss curves); 2 samples through
training; 3 neuron ranking per feature (table, bar chart of r, top-k probe curve); 4 the excerpt
coloured by each selected unit (tanh(c) for cell states, h as is), with the feature's labels
underlined and a picker among the feature's top units; 5 predictions (the text coloured by the
probability of each actual character, and the model's top 5 guesses under each character);
6 activation inside vs outside each feature; 7 gate saturation per layer (LSTM and GRU). With
live=True, a live section after the predictions: the model itself runs in the page (neuroscope.live).

Content is built as plain data first (`Report.sections`, `Report.data`), then rendered by
neuroscope.page. The pieces: neuroscope.excerpt reads the numbers off the excerpt (unit values,
gate saturation, predictions), neuroscope.sections turns them into sections, neuroscope.charts
draws the altair charts. Recording covers only the shown excerpt (at most `max_chars` characters), one
chunk at a time, so memory stays bounded whatever the span's length.
"""
from ._build import Report, build_report
from ._demo import DemoResult, run_demo

__all__ = ["DemoResult", "Report", "build_report", "run_demo"]
