"""Stage 2 of the pipeline: prompts.

All prompt text lives in ``prompts/*.jinja``; this module only renders it, through one
sandboxed StrictUndefined environment. A labeler prompt has two parts:

* the *user* turn (``labeler.jinja``): preamble, k exemplars, the sample, and the ending's
  instruction (empty for the direct ending);
* the *assistant* turn, from the ending template: ``Preferred Summary=`` for the direct
  ending, ``Rationale:`` (then the decoded rationale and ``Preferred Summary=``) for CoT.

A backend joins the two (an instruct model's chat template with the assistant turn as a
prefix, or plain text for base models), so the prompt always ends right before the digit.
"""

from __future__ import annotations

import hashlib
import os
import random
import traceback
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from lab.data import Pair
from lab.errors import PromptError  # noqa: F401  (re-exported)


def _packaged_prompts() -> Path:
    """The templates' folder: ``lab.prompts_data`` (the repository's ``prompts/``, shipped with
    the package), or ``prompts/`` beside the source tree where the lab is not installed."""
    try:
        # joinpath gives a real path (also for the namespace package an install makes)
        return Path(str(resources.files("lab.prompts_data").joinpath("labeler.jinja"))).parent
    except ModuleNotFoundError:
        return Path(__file__).resolve().parent.parent / "prompts"


PROMPTS_DIR = Path(os.environ.get("RLAIF_PROMPTS_DIR") or _packaged_prompts())


@dataclass(frozen=True)
class PromptConfig:
    """How the labeler prompt is assembled."""

    preamble: str = "detailed"
    """Template under ``prompts/preamble/`` (``base``, ``detailed``, ...), or the path of a
    ``.jinja`` file elsewhere (an optimised preamble: ``results/NAME/opt_NAME.jinja``)."""
    shots: int = 0
    """Number of few-shot exemplars drawn from the exemplar pool."""
    cot: bool = False
    """Decode a rationale before the answer (chain-of-thought ending)."""
    max_exemplar_chars: int = 1200
    """Exemplars are drawn only from pool posts at most this long (keeps prompts short)."""
    shuffle_order: int | None = None
    """Seed for presenting each pair in a random order first (recorded as ``first_shown``);
    None presents the stored order first. Both orders are still scored, and ``p`` stays
    P(stored first response better)."""
    judge: str = "pairwise"
    """How the preference is read (:data:`lab.judges.JUDGES`, docs/judges.md): ``pairwise``
    (1 / 2, both orders; the templates above), ``rating`` (each response rated 1-9),
    ``pairwise-tie`` (1 / 2 / 3 = tie, conservative verdict), ``self-reward`` (additive 0-5
    rubric), ``principles`` / ``principles-all`` (a constitution's principle, one sampled per
    pair or all averaged) or ``reference`` (pairwise with a reference answer). Only the
    pairwise judge on TL;DR reads the preamble, exemplars and chain-of-thought ending; the
    other judges and task families have their own templates (``prompts/judges/``,
    ``prompts/hh/``, ``prompts/instruction/``)."""


@dataclass(frozen=True)
class Rendered:
    """A rendered prompt before the backend's chat formatting."""

    user: str
    """The user turn."""
    assistant: str
    """The start of the assistant turn; it ends right before the digit (or the rationale)."""


@dataclass(frozen=True)
class Exemplar:
    """A few-shot example: a pool pair and its human label (1 or 2)."""

    text: str
    """The post."""
    first: str
    """The summary shown as Summary 1."""
    second: str
    """The summary shown as Summary 2."""
    label: int
    """Which summary the human preferred: 1 or 2."""


_ENV: SandboxedEnvironment | None = None


def environment() -> SandboxedEnvironment:
    """The one Jinja environment of the lab (sandboxed, StrictUndefined)."""
    global _ENV
    if _ENV is None:
        _ENV = SandboxedEnvironment(
            loader=jinja2.FileSystemLoader(str(PROMPTS_DIR)),
            undefined=jinja2.StrictUndefined,
            autoescape=False,
        )
    return _ENV


def render_template(name: str, **variables) -> str:
    """Render one template; errors name the template and the fix."""
    try:
        return environment().get_template(name).render(**variables).strip()
    except jinja2.TemplateNotFound as err:
        known = ", ".join(sorted(environment().list_templates(extensions=["jinja"])))
        raise PromptError(
            f"template '{err.name}' not found in {PROMPTS_DIR} (wanted by '{name}'); "
            f"known templates: {known}"
        ) from None
    except jinja2.UndefinedError as err:
        where = _template_in_traceback(err) or name
        raise PromptError(
            f"template '{where}': {err.message}; "
            "pass that variable or remove it from the template"
        ) from None
    except jinja2.TemplateSyntaxError as err:
        where = err.name or name
        raise PromptError(f"template '{where}' line {err.lineno}: {err.message}") from None
    except jinja2.TemplateError as err:  # e.g. SecurityError: the sandbox refused something
        where = _template_in_traceback(err) or name
        raise PromptError(
            f"template '{where}': {type(err).__name__}: {str(err).rstrip('.')}; fix the template"
        ) from None
    except (ArithmeticError, LookupError, TypeError, ValueError) as err:
        where = _template_in_traceback(err)
        if where is None:  # raised outside any template: a bug, keep the traceback
            raise
        raise PromptError(
            f"template '{where}': {type(err).__name__}: {str(err).rstrip('.')}; fix the template"
        ) from None


def _template_in_traceback(err: Exception) -> str | None:
    frames = [f.filename for f in traceback.extract_tb(err.__traceback__)]
    for filename in reversed(frames):
        if filename.endswith(".jinja"):
            return os.path.relpath(filename, PROMPTS_DIR)
    return None


def is_preamble_path(name: str) -> bool:
    """A preamble named by a file path (``results/NAME/opt_NAME.jinja``) rather than by name."""
    return name.endswith(".jinja") or "/" in name or os.sep in name


def preamble_file(name: str) -> Path:
    """The file of a preamble: ``prompts/preamble/NAME.jinja``, or the path itself (relative to
    the working folder), e.g. an optimised preamble ``results/optimize_preamble/opt.jinja``."""
    return Path(name) if is_preamble_path(name) else PROMPTS_DIR / "preamble" / f"{name}.jinja"


def _preamble_template(name: str):
    """What labeler.jinja includes: a template name, or a file outside ``prompts/`` compiled by
    the lab's one environment."""
    if not is_preamble_path(name):
        return f"preamble/{name}.jinja"
    path = Path(name)
    if not path.is_file():
        raise PromptError(f"preamble {name}: no such file; name a template in "
                          f"{PROMPTS_DIR / 'preamble'} or an existing .jinja file")
    try:
        return environment().from_string(path.read_text(encoding="utf-8"))
    except jinja2.TemplateSyntaxError as err:
        raise PromptError(f"preamble {path} line {err.lineno}: {err.message}") from None


def template_digests(config: PromptConfig, task: str = "summarize") -> dict[str, str]:
    """sha256 of every template a labeler prompt with this config reads, by name.

    From the judge's templates for the task family (TL;DR pairwise: the labeler and ending
    templates; a ``.yaml`` it reads, such as a principles file) and, for a judge that reads
    one, the chosen preamble, following every static ``include`` (the dynamic ones, preamble
    and ending, are the roots). A run folder records these, so a template edited after a run
    started is noticed rather than mixed in.
    """
    from jinja2 import meta

    from lab.judges import judge_class

    judge = judge_class(config.judge)
    todo = list(judge.templates_for(task))
    preamble = None
    if judge.reads_preamble and task == "summarize":
        if is_preamble_path(config.preamble):
            _preamble_template(config.preamble)  # a missing or broken file: its own error
        preamble = (str(preamble_file(config.preamble)) if is_preamble_path(config.preamble)
                    else f"preamble/{config.preamble}.jinja")
        todo.append(preamble)
    digests: dict[str, str] = {}
    while todo:
        name = todo.pop()
        if name in digests:
            continue
        # a preamble named by path lies outside prompts/; everything else inside
        path = Path(name) if name == preamble and is_preamble_path(config.preamble) \
            else PROMPTS_DIR / name
        if not path.is_file():
            raise PromptError(f"template '{name}' not found in {PROMPTS_DIR}; known preambles: "
                              f"{', '.join(preambles())}")
        source = path.read_bytes()
        digests[name] = hashlib.sha256(source).hexdigest()
        if not name.endswith(".jinja"):  # data a judge reads (principles): no includes
            continue
        try:
            ast = environment().parse(source.decode("utf-8"))
        except jinja2.TemplateSyntaxError as err:
            raise PromptError(f"template '{name}' line {err.lineno}: {err.message}") from None
        except UnicodeDecodeError:
            raise PromptError(f"template '{name}': not UTF-8; save it as UTF-8") from None
        todo += [t for t in meta.find_referenced_templates(ast) if t]
    return dict(sorted(digests.items()))


def preambles() -> list[str]:
    """Names of the preamble templates in ``prompts/preamble/``."""
    return sorted(p.stem for p in (PROMPTS_DIR / "preamble").glob("*.jinja")
                  if not p.stem.startswith("_"))


def choose_exemplars(pool: list[Pair], k: int, seed: int, max_chars: int) -> list[Exemplar]:
    """Pick k exemplars from the pool, seeded, alternating labels 1 and 2 (no label skew)."""
    if k == 0:
        return []
    short = [p for p in pool if len(p.text) <= max_chars]
    random.Random(seed).shuffle(short)
    by_label = {1: [p for p in short if p.human == 1.0], 2: [p for p in short if p.human == 0.0]}
    out = []
    for i in range(k):
        label = 1 if i % 2 == 0 else 2
        if not by_label[label]:
            label = 3 - label
        if not by_label[label]:
            raise PromptError(
                f"exemplar pool has only {len(out)} usable pairs for --shots {k}; lower --shots"
            )
        p = by_label[label].pop()
        out.append(Exemplar(text=p.text, first=p.first, second=p.second, label=label))
    return out


def render_parts(name: str, **variables) -> Rendered:
    """Render a template that holds both turns (``part`` = ``user`` / ``assistant``), as the
    judges' templates under ``prompts/judges/`` do."""
    return Rendered(user=render_template(name, part="user", **variables),
                    assistant=render_template(name, part="assistant", **variables))


def render(
    config: PromptConfig,
    text: str,
    summary_1: str,
    summary_2: str,
    exemplars: list[Exemplar],
    rationale: str | None = None,
    preamble_text: str = "",
) -> Rendered:
    """Render the labeler prompt for one presentation order.

    Args:
        config: preamble, shots and CoT setting.
        text: the post.
        summary_1: the summary shown first.
        summary_2: the summary shown second.
        exemplars: the few-shot exemplars (``len == config.shots``).
        rationale: for CoT, the decoded rationale; None before it is decoded.
        preamble_text: the text of the ``_candidate`` preamble (a preamble being optimised
            by ``rlaif optimize``); other preambles ignore it.
    """
    ending = "cot" if config.cot else "direct"
    sample = {"text": text, "summary_1": summary_1, "summary_2": summary_2}
    user = render_template(
        "labeler.jinja",
        preamble=_preamble_template(config.preamble),
        exemplars=exemplars,
        cot=config.cot,
        sample=sample,
        ending=ending,
        part="user",
        rationale=rationale,
        preamble_text=preamble_text,
    )
    assistant = render_template(f"ending/{ending}.jinja", part="assistant", rationale=rationale)
    return Rendered(user=user, assistant=assistant)
