"""The self-contained HTML page that a report renders to: template, CSS, inline script, Vega bundle.

    >>> html = render_page(title="wp_lstm3x512", subtitle=["..."], sections=[...], data={...})

`sections` is plain data (dicts with "id", "title", "kind" and the fields that kind needs, see
the macros in MACROS; "number" is optional, the position by default); `data` is what the inline
script needs (the excerpt, per-unit values, labels, predictions, chart specs). The kind "html" is
the free-form hook: its "html" field is a fragment written by the caller, put in unescaped (the
caller escapes what it interpolates), after its optional "charts" [(chart id, caption)].
Nothing here knows about models: neuroscope.report builds the plain data, this module only turns
it into one HTML string.

Safety: the corpus is data, never markup. Template text goes through Jinja2 autoescaping, and
the excerpt travels in one `<script type="application/json">` block with `<`, `>` and `&`
written as JSON escapes, so no `</script>` in a corpus can end the block; the script then puts
each character into the page with `textContent`, which never parses HTML.

The page makes no network request: the Vega, Vega-Lite and vega-embed libraries are inlined
from vl-convert's bundled copies, the CSS is inline and fonts are the system's.
"""
from __future__ import annotations

import functools
import html
import json

import jinja2
from markupsafe import Markup

# Colour anchors shared by the CSS legends (here) and the inline script (below): one place.
BLUE, WHITE, GREEN = (33, 102, 172), (247, 247, 247), (26, 152, 80)     # unit activation -1, 0, +1
RED, YELLOW = (215, 48, 39), (254, 224, 139)                            # p(next char) 0, 0.5 (1: white)
SHADE = (214, 39, 40)                                                   # top-5 predictions, by probability
LABEL = (230, 85, 13)                                                   # feature label underline


@functools.lru_cache(maxsize=1)
def _vega_bundle() -> str:
    """vega-embed + Vega-Lite + Vega as one script (about 0.9 MB), matching altair's Vega-Lite."""
    import altair as alt
    import vl_convert as vlc
    vl_version = "_".join(alt.SCHEMA_VERSION.split(".")[:2])      # "v6.4.1" -> "v6_4"
    # The bundle holds no "</script" today; escape it anyway so that a future one cannot end the tag.
    return vlc.javascript_bundle(vl_version=vl_version).replace("</script", "<\\/script")


def _json_for_script(obj) -> str:
    """JSON safe inside a <script> element: no '<', '>' or '&' survives, so no tag can close it."""
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _rgb(c) -> str:
    return f"rgb({c[0]},{c[1]},{c[2]})"


CSS = """
:root { --bg: #ffffff; --fg: #1d1f23; --muted: #5f6670; --line: #d9dde3; --card: #f6f7f9;
        --link: #1f5fbf; --paper: #ffffff; }
@media (prefers-color-scheme: dark) {
  :root { --bg: #16181c; --fg: #e4e6ea; --muted: #a0a7b1; --line: #343a42; --card: #1f2228;
          --link: #8ab4f8; --paper: #fbfbfb; }
}
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--fg);
       font: 15px/1.5 system-ui, -apple-system, "Segoe UI", "DejaVu Sans", sans-serif; }
a { color: var(--link); }
header { padding: 18px 28px 8px; border-bottom: 1px solid var(--line); }
header h1 { margin: 0 0 4px; font-size: 22px; }
.sub { color: var(--muted); margin: 0; }
.layout { display: flex; align-items: flex-start; }
nav.toc { position: sticky; top: 0; flex: 0 0 210px; padding: 16px 12px 16px 28px; font-size: 14px; }
nav.toc ol { padding-left: 18px; margin: 0; }
nav.toc li { margin: 3px 0; }
main { flex: 1 1 auto; min-width: 0; padding: 4px 28px 60px 12px; max-width: 1200px; }
section { border-bottom: 1px solid var(--line); padding-bottom: 14px; }
h2 { font-size: 19px; margin: 22px 0 8px; }
h3 { font-size: 16px; margin: 18px 0 6px; }
.note { color: var(--muted); font-size: 13.5px; margin: 4px 0; }
.warn { background: #fff4d6; color: #4a3b00; padding: 6px 10px; border-radius: 4px; }
table { border-collapse: collapse; font-size: 13.5px; margin: 6px 0 10px; }
th, td { border-bottom: 1px solid var(--line); padding: 3px 9px; text-align: right; white-space: nowrap; }
th { background: var(--card); }
td.l, th.l { text-align: left; }
tr.pick { cursor: pointer; }
tr.pick:hover td { background: var(--card); }
dl.card { display: grid; grid-template-columns: max-content auto; gap: 2px 18px; margin: 6px 0; }
dl.card dt { color: var(--muted); }
dl.card dd { margin: 0; }
pre.sample { background: var(--card); border: 1px solid var(--line); border-radius: 4px; padding: 8px 10px;
             white-space: pre-wrap; word-break: break-word; font: 13px/1.45 "DejaVu Sans Mono", monospace; margin: 4px 0 10px; }
.charts { display: flex; flex-wrap: wrap; gap: 16px; align-items: flex-start; }
.chart { background: #ffffff; border: 1px solid var(--line); border-radius: 4px; padding: 6px; min-height: 40px; }
.controls { display: flex; flex-wrap: wrap; gap: 14px; align-items: center; margin: 6px 0; font-size: 14px; }
select, button { font: inherit; }
.legend { display: inline-flex; align-items: center; gap: 6px; font-size: 12.5px; color: var(--muted); }
.legend .bar { display: inline-block; width: 160px; height: 12px; border: 1px solid var(--line); }
.legend .uline { display: inline-block; width: 22px; border-bottom: 3px solid %(label)s; }
.textview { background: var(--paper); color: #111; border: 1px solid var(--line); border-radius: 4px;
            padding: 8px 10px; white-space: pre-wrap; word-break: break-all; tab-size: 4;
            font: 13.5px/1.75 "DejaVu Sans Mono", "Liberation Mono", monospace; max-height: 560px; overflow-y: auto; }
.textview .ch { border-bottom: 3px solid transparent; }
.textview.nolabels .ch { border-bottom-color: transparent !important; }
.ch.nl::before { content: "\\21B5"; opacity: .45; }
.ch.cr { display: inline-block; width: .3em; overflow: hidden; vertical-align: bottom; }
.ch.cr::before { content: "\\00a0"; }
.grid { display: flex; flex-wrap: wrap; background: var(--paper); color: #111; border: 1px solid var(--line);
        border-radius: 4px; padding: 8px; font: 12.5px/1.2 "DejaVu Sans Mono", "Liberation Mono", monospace; }
.pcol { display: flex; flex-direction: column; margin: 0 1px 8px 0; min-width: 1.45em; text-align: center; }
.pcol div { padding: 1px 2px; white-space: pre; }
.pcol .pch { font-weight: bold; border-bottom: 1px solid #999; }
.pbreak { flex-basis: 100%%; height: 0; }
.free td, .free th { text-align: left; vertical-align: top; }
.wide { max-width: 100%%; overflow-x: auto; }
table.explain td:nth-child(3), table.explain td:nth-child(7) { white-space: normal; min-width: 10em; }
table.explain code { overflow-wrap: anywhere; }
.ctx { font-family: "DejaVu Sans Mono", monospace; white-space: pre; }
#live-text { width: 100%%; font: 13.5px/1.5 "DejaVu Sans Mono", "Liberation Mono", monospace; }
.live-edit.bad input:first-of-type { outline: 2px solid %(red)s; }
"""


SCRIPT = """
(function () {
  "use strict";
  var D = JSON.parse(document.getElementById("ns-data").textContent);
  var chars = Array.from(D.text || "");          // code points, as Python counts characters
  var BLUE = %(blue)s, WHITE = %(white)s, GREEN = %(green)s, RED = %(red)s, YELLOW = %(yellow)s,
      SHADE = %(shade)s, LABEL = %(label)s;
  function mix(a, b, t) {
    return "rgb(" + a.map(function (x, i) { return Math.round(x + (b[i] - x) * t); }).join(",") + ")";
  }
  function diverging(v) {                         // -1 blue (inactive) .. 0 white .. +1 green (active)
    v = Math.max(-1, Math.min(1, v));
    return v < 0 ? mix(WHITE, BLUE, -v) : mix(WHITE, GREEN, v);
  }
  function surprise(p) { return p < 0.5 ? mix(RED, YELLOW, 2 * p) : mix(YELLOW, WHITE, 2 * p - 1); }
  function ink(strength) { return strength > 0.62 ? "#ffffff" : "#111111"; }
  function fmt(v) { return Math.abs(v) >= 100 ? v.toFixed(1) : v.toFixed(3); }
  function glyph(ch) {                           // a visible stand-in for blanks and control characters
    if (ch === "\\n") return "\\u21B5";
    if (ch === "\\r") return "\\\\r";
    if (ch === " ") return "\\u2423";
    if (ch === "\\t") return "\\u21E5";
    var code = ch.codePointAt(0);
    if (code < 32 || code === 127 || code === 0xFEFF || (code >= 0x200B && code <= 0x200F))
      return "U+" + code.toString(16).toUpperCase().padStart(4, "0");
    return ch;
  }
  function makeSpans(el) {                       // one span per character, text set as text
    var frag = document.createDocumentFragment();
    var spans = chars.map(function (ch) {
      var s = document.createElement("span");
      s.className = ch === "\\n" ? "ch nl" : ch === "\\r" ? "ch cr" : "ch";
      s.textContent = ch;
      frag.appendChild(s);
      return s;
    });
    el.appendChild(frag);
    return spans;
  }

  // Unit views: the excerpt coloured by one unit, the feature's labels underlined.
  document.querySelectorAll(".textview[data-panel]").forEach(function (el) {
    var panel = D.panels[el.dataset.panel], spans = makeSpans(el);
    var labels = panel.feature !== null && D.labels[panel.feature] ? D.labels[panel.feature] : null;
    if (labels) {
      var top = labels.reduce(function (m, x) { return Math.max(m, x); }, 1);
      spans.forEach(function (s, k) {
        if (labels[k] > 0) s.style.borderBottomColor = "rgba(" + LABEL.join(",") + "," + (labels[k] / top).toFixed(3) + ")";
      });
    }
    function show(uid) {
      var u = D.units[uid], latent = u.max !== undefined;
      spans.forEach(function (s, k) {
        // a unit: its shown value on [-1, 1]; a latent: its activation over its largest on the excerpt, 0..1
        var raw = u.values[k], v = latent ? (u.max > 0 ? raw / u.max : 0) : u.tanh ? Math.tanh(raw) : raw;
        s.style.backgroundColor = diverging(v);
        s.style.color = ink(Math.abs(v));
        var t = uid + " = " + fmt(raw) + (latent ? " (largest on the excerpt " + fmt(u.max) + ")"
                                                 : u.tanh ? " (tanh " + v.toFixed(3) + ")" : "");
        if (labels) t += "\\n" + panel.feature + " = " + labels[k];
        s.title = t + "\\nchar " + (D.start + k);
      });
    }
    var pick = document.getElementById("pick-" + el.dataset.panel);
    pick.addEventListener("change", function () { show(pick.value); });
    show(pick.value);
    var box = document.getElementById("labels-" + el.dataset.panel);
    if (box) box.addEventListener("change", function () { el.classList.toggle("nolabels", !box.checked); });
  });

  // A click on a ranking row shows that unit in its feature's view.
  document.querySelectorAll("tr.pick").forEach(function (row) {
    row.addEventListener("click", function () {
      var pick = document.getElementById("pick-" + row.dataset.panel);
      if (!pick) return;
      pick.value = row.dataset.unit;
      pick.dispatchEvent(new Event("change"));
      pick.scrollIntoView({block: "center"});
    });
  });

  // The excerpt coloured by the probability the model gave each character before reading it.
  var P = D.pred;
  document.querySelectorAll(".textview.surprise").forEach(function (el) {
    var spans = makeSpans(el);
    spans.forEach(function (s, k) {
      var p = P.actual[k];
      if (p < 0) { s.style.backgroundColor = "rgb(200,200,200)"; s.title = "first character: no prediction"; return; }
      s.style.backgroundColor = surprise(p / 1000);
      s.style.color = ink(p < 150 ? 1 : 0);
      var alt = [];
      for (var j = 0; j < P.k; j++) alt.push(glyph(D.vocab[P.top[(k - 1) * P.k + j]]) + " " + (P.p[(k - 1) * P.k + j] / 1000).toFixed(3));
      s.title = "p(" + glyph(chars[k]) + ") = " + (p / 1000).toFixed(3) + "\\nexpected: " + alt.join("  ") + "\\nchar " + (D.start + k);
    });
  });

  // Under each character, the model's top guesses for the next one, one page at a time.
  document.querySelectorAll(".grid[data-page]").forEach(function (el) {
    var size = P.page, pages = Math.max(1, Math.ceil(chars.length / size)), page = 0;
    var label = document.getElementById("grid-where");
    function render() {
      el.textContent = "";
      var lo = page * size, hi = Math.min(chars.length, lo + size);
      for (var k = lo; k < hi; k++) {
        var col = document.createElement("div"); col.className = "pcol";
        var head = document.createElement("div"); head.className = "pch"; head.textContent = glyph(chars[k]);
        head.title = "char " + (D.start + k); col.appendChild(head);
        for (var j = 0; j < P.k; j++) {
          var c = document.createElement("div"), p = P.p[k * P.k + j] / 1000;
          c.textContent = glyph(D.vocab[P.top[k * P.k + j]]);
          c.style.backgroundColor = mix(WHITE, SHADE, p); c.style.color = ink(p);
          c.title = "p = " + p.toFixed(3); col.appendChild(c);
        }
        el.appendChild(col);
        if (chars[k] === "\\n") { var br = document.createElement("div"); br.className = "pbreak"; el.appendChild(br); }
      }
      label.textContent = "characters " + (lo + 1) + "\\u2013" + hi + " of " + chars.length + " (page " + (page + 1) + " of " + pages + ")";
    }
    document.getElementById("grid-prev").addEventListener("click", function () { if (page > 0) { page--; render(); } });
    document.getElementById("grid-next").addEventListener("click", function () { if (page < pages - 1) { page++; render(); } });
    render();
  });

  // Charts: Vega-Lite specs drawn as SVG by the inlined vega-embed.
  var charts = document.querySelectorAll(".chart[data-chart]");
  if (charts.length && typeof vegaEmbed === "undefined") console.error("neuroscope: the Vega bundle is missing");
  charts.forEach(function (el) {
    vegaEmbed(el, D.charts[el.dataset.chart], {actions: false, renderer: "svg"}).catch(function (e) { console.error(e); });
  });
  // What a later script of the page (neuroscope/live.js) draws with: the same colours and glyphs.
  window.neuroscopeDraw = {data: D, mix: mix, diverging: diverging, surprise: surprise, ink: ink, fmt: fmt,
                           glyph: glyph, colours: {white: WHITE, shade: SHADE}};
  window.neuroscopeReady = true;
})();
"""

TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>{{ title }}</title>
<style>{{ css }}</style>
{% if bundle %}<script>{{ bundle }}</script>{% endif %}
</head>
<body>
<header><h1>{{ title }}</h1>{% for line in subtitle %}<p class="sub">{{ line }}</p>{% endfor %}</header>
<noscript><p class="warn">The coloured text views and charts need JavaScript.</p></noscript>
<div class="layout">
{% if sections|length > 1 %}
<nav class="toc"><strong>Contents</strong><ol>
{% for s in sections %}<li><a href="#{{ s.id }}">{{ s.title }}</a></li>{% endfor %}
</ol></nav>
{% endif %}
<main>
{% for s in sections %}
<section id="{{ s.id }}">
<h2>{{ s.get('number', loop.index) }}. {{ s.title }}</h2>
{% for n in s.get('notes', []) %}<p class="note">{{ n }}</p>{% endfor %}
{% for w in s.get('warnings', []) %}<p class="warn">{{ w }}</p>{% endfor %}
{{ kinds[s.kind](s) }}
</section>
{% endfor %}
</main>
</div>
<script type="application/json" id="ns-data">{{ data_json }}</script>
<script>{{ script }}</script>
{% for extra in scripts %}<script>{{ extra }}</script>
{% endfor %}
</body>
</html>
"""

MACROS = """
{% macro legend_units() -%}
<span class="legend">inactive &minus;1 <span class="bar" style="background:linear-gradient(90deg, {{ c.blue }}, {{ c.white }}, {{ c.green }})"></span> +1 active</span>
{%- endmacro %}

{% macro legend_latents() -%}
<span class="legend">off 0 <span class="bar" style="background:linear-gradient(90deg, {{ c.white }}, {{ c.green }})"></span> the latent's largest on the excerpt</span>
{%- endmacro %}

{% macro chart(id, caption=None) -%}
<figure style="margin:0">{% if caption %}<figcaption class="note">{{ caption }}</figcaption>{% endif %}
<div class="chart" data-chart="{{ id }}"></div></figure>
{%- endmacro %}

{% macro model(s) -%}
<dl class="card">{% for k, v in s.card %}<dt>{{ k }}</dt><dd>{{ v }}</dd>{% endfor %}</dl>
{% if s.chart %}<div class="charts">{{ chart(s.chart, "Loss (nats per character) against training step") }}</div>{% endif %}
{%- endmacro %}

{% macro samples(s) -%}
{% for step, text in s.samples %}<h3>{{ step }}</h3><pre class="sample">{{ text }}</pre>{% endfor %}
{%- endmacro %}

{% macro ranking(s) -%}
{% for f in s.features %}
<h3>{{ f.name }}</h3>{% if f.description %}<p class="note">{{ f.description }}</p>{% endif %}
<table><thead><tr>{% for h in f.columns %}<th class="{{ 'l' if loop.index <= 2 else '' }}">{{ h }}</th>{% endfor %}</tr></thead>
<tbody>{% for row in f.rows %}<tr class="pick" data-panel="{{ f.panel }}" data-unit="{{ row[1] }}" title="show {{ row[1] }} in the unit view">
{% for v in row %}<td class="{{ 'l' if loop.index <= 2 else '' }}">{{ v }}</td>{% endfor %}</tr>{% endfor %}</tbody></table>
<div class="charts">{{ chart(f.chart, "Pearson r of the top units") }}{% if f.topk_chart %}{{ chart(f.topk_chart, "Probe score using the top k units") }}{% endif %}</div>
{% endfor %}
{%- endmacro %}

{% macro units(s) -%}
{% for p in s.panels %}
<h3>{{ p.title }}</h3>
<div class="controls">
<label>{{ 'latent' if s.get('latents') else 'unit' }} <select id="pick-{{ p.id }}">{% for u in p.options %}<option value="{{ u.id }}">{{ u.label }}</option>{% endfor %}</select></label>
{% if p.feature is not none %}<label><input type="checkbox" id="labels-{{ p.id }}" checked> show {{ p.feature }} labels</label>{% endif %}
{% if s.get('latents') %}{{ legend_latents() }}{% else %}{{ legend_units() }}{% endif %}
{% if p.feature is not none %}<span class="legend"><span class="uline"></span> {{ p.feature }} {{ 'on' if p.kind == 'binary' else '(darker = larger count)' }}</span>{% endif %}
</div>
<div class="textview" data-panel="{{ p.id }}"></div>
{% endfor %}
{%- endmacro %}

{% macro predictions(s) -%}
<h3>How expected was each character?</h3>
<div class="controls"><span class="legend">surprised p=0 <span class="bar" style="background:linear-gradient(90deg, {{ c.red }}, {{ c.yellow }}, {{ c.white }})"></span> p=1 expected</span>
<span class="legend">(hover: the probability and the model's top guesses)</span></div>
<div class="textview surprise"></div>
<h3>The model's top {{ s.k }} guesses after each character</h3>
<div class="controls"><button id="grid-prev" type="button">&larr; previous</button><button id="grid-next" type="button">next &rarr;</button>
<span id="grid-where" class="note"></span>
<span class="legend">p=0 <span class="bar" style="background:linear-gradient(90deg, {{ c.white }}, {{ c.shade }})"></span> p=1</span></div>
<div class="grid" data-page="1"></div>
{%- endmacro %}

{% macro live(s) -%}
<div class="controls">
<label>unit <select id="live-pick">{% for u in s.options %}<option value="{{ u.id }}">{{ u.label }}</option>{% endfor %}</select></label>
<label>or any unit <input id="live-unit" size="10" placeholder="{{ s.options[0].id if s.options else 'l0.h.0' }}"></label>
{{ legend_units() }}
{% if s.crlf is not none %}<label><input type="checkbox" id="live-crlf"{{ ' checked' if s.crlf else '' }}> read line breaks as \\r\\n (the vocabulary has \\r)</label>{% endif %}
</div>
<textarea id="live-text" rows="6" spellcheck="false" placeholder="Type or paste text here"></textarea>
<p class="note" id="live-status"></p><p class="note" id="live-loss"></p>
<h3>Interventions</h3>
<div id="live-edits"></div>
<div class="controls"><button id="live-add" type="button">add an intervention</button>
<span class="note">zero, clamp or scale units of h or c at every character, as <code>char_losses</code> does</span></div>
<h3>Coloured by the picked unit</h3>
<div class="textview" id="live-units"></div>
<h3>How expected was each character?</h3>
<div class="controls"><span class="legend">surprised p=0 <span class="bar" style="background:linear-gradient(90deg, {{ c.red }}, {{ c.yellow }}, {{ c.white }})"></span> p=1 expected</span></div>
<div class="textview" id="live-surprise"></div>
<h3>The model's top 5 guesses after each character</h3>
<div class="grid" id="live-grid"></div>
<h3>Sample a continuation</h3>
<div class="controls"><label>temperature <input id="live-temp" type="number" value="0.8" min="0" step="0.1" size="5"></label>
<label>characters <input id="live-len" type="number" value="200" min="0" max="5000" size="6"></label>
<label><input id="live-with" type="checkbox" checked> with the interventions</label>
<button id="live-sample" type="button">sample</button></div>
<pre class="sample" id="live-sampled"></pre>
{%- endmacro %}

{% macro charts(s) -%}
{% for id, caption in s.charts %}<div class="charts">{{ chart(id, caption) }}</div>{% endfor %}
{%- endmacro %}

{% macro html(s) -%}
{% for id, caption in s.get('charts', []) %}<div class="charts">{{ chart(id, caption) }}</div>{% endfor %}
<div class="free">{{ s.html|safe }}</div>
{%- endmacro %}
"""


KINDS = ("model", "samples", "ranking", "units", "predictions", "live", "charts", "html")    # one macro each


@functools.lru_cache(maxsize=1)
def _environment() -> tuple[jinja2.Template, object]:
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True)
    colours = {"blue": _rgb(BLUE), "white": _rgb(WHITE), "green": _rgb(GREEN), "red": _rgb(RED),
               "yellow": _rgb(YELLOW), "shade": _rgb(SHADE)}
    macros = env.from_string(MACROS, globals={"c": colours}).module
    return env.from_string(TEMPLATE), macros


def render_page(title: str, subtitle: list[str], sections: list[dict], data: dict, scripts=()) -> str:
    """One HTML document: sections (plain data, rendered by their kind's macro) and the script's data.

    The Vega bundle is included only when some section has a chart. `scripts`: more inline scripts
    of the caller's (trusted, no "</script" inside), run after the page's own, which leaves its
    data and colour helpers in window.neuroscopeDraw for them.
    """
    template, macros = _environment()
    kinds = {k: getattr(macros, k) for k in KINDS}
    script = SCRIPT % {k: json.dumps(list(v)) for k, v in
                       {"blue": BLUE, "white": WHITE, "green": GREEN, "red": RED, "yellow": YELLOW,
                        "shade": SHADE, "label": LABEL}.items()}
    css = CSS % {"label": _rgb(LABEL), "red": _rgb(RED)}
    return template.render(
        title=title, subtitle=subtitle, sections=sections, kinds=kinds,
        css=_markup(css),
        bundle=_markup(_vega_bundle()) if data.get("charts") else "",
        data_json=_markup(_json_for_script(data)), script=_markup(script),
        scripts=[_markup(x.replace("</script", "<\\/script")) for x in scripts])


def _markup(text: str) -> Markup:
    # Trusted text of our own (CSS, script, escaped JSON): passed through without HTML-escaping.
    return Markup(text)


def iframe(page: str, height: int = 720) -> str:
    """A page wrapped in an <iframe srcdoc>, so that Jupyter shows it with its own CSS and script."""
    return (f'<iframe srcdoc="{html.escape(page, quote=True)}" style="width:100%;height:{height}px;'
            f'border:1px solid #ccc" sandbox="allow-scripts"></iframe>')
