"""Hook specifications: every extension point of APT, grouped by lifecycle phase.

Each hook is documented in one template: a one-line summary, when it is called, what the
return value means, and one ``:param:`` per argument. ``docs/hooks.md`` repeats each signature
and a test fails when the two drift apart.

Registration hooks receive a ``register`` callback instead of returning values, so the core
owns name conflicts: two plugins registering the same name is an error naming both.
Implementations must not give their arguments defaults (pluggy never passes them).
"""

from __future__ import annotations

import pluggy

__all__ = ["hookspec", "hookimpl", "PROJECT_NAME"]

PROJECT_NAME = "apt"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


# ---------------------------------------------------------------------------------------------
# Start-up: commands and configuration
# ---------------------------------------------------------------------------------------------


@hookspec
def apt_register_commands(cli):
    """Add click commands or groups to the ``apt-model`` command line.

    Called once when the CLI starts, after plugins are loaded and before arguments are parsed.
    Import heavy modules inside the command bodies, not at module level, so that
    ``apt-model --help`` stays fast.

    :param cli: the root :class:`click.Group`; call ``cli.add_command(command)``.
        Adding a name that the core or another plugin already uses is an error naming both.
    :return: ignored.
    """


@hookspec
def apt_register_config(register):
    """Declare the plugin's ``[plugins.<section>]`` configuration section.

    Called when the configuration is first read, after plugins are loaded.

    :param register: ``register(section, defaults, validate)``: ``section`` is the section name
        (usually the plugin name), ``defaults`` a dict of every key with its default value (a key
        not listed is rejected), ``validate`` ``None`` or a callable taking the merged dict and
        returning it (possibly normalised); it raises :class:`apt_core.errors.APTError` on bad values.
    :return: ignored.
    """


# ---------------------------------------------------------------------------------------------
# Resolving what a command works on: data, models, storage, export formats
# ---------------------------------------------------------------------------------------------


@hookspec
def apt_register_data_sources(register):
    """Register loaders for ``--data`` values, by scheme (``file``, ``default``, ``hf`` …).

    Called the first time a ``--data`` value is resolved in a process.

    :param register: ``register(scheme, loader)``; ``loader(location, *, text_field, streaming)``
        returns an iterable of text documents. ``location`` is the part after ``scheme:``.
    :return: ignored.
    """


@hookspec
def apt_register_model_loaders(register):
    """Register loaders for ``--model`` / ``--teacher`` values, by scheme (``apt``, ``hf`` …).

    Called the first time a model specification is resolved in a process.

    :param register: ``register(scheme, loader)``; ``loader(location)`` returns a
        ``torch.nn.Module`` causal language model whose ``forward(input_ids, attention_mask=None,
        output_hidden_states=False)`` returns an object with ``.logits`` (and ``.hidden_states``
        when asked).
    :return: ignored.
    """


@hookspec
def apt_register_storage(register):
    """Register storage backends for backup URLs, by scheme (``file``, ``s3``, ``oss`` …).

    Called the first time a storage URL is resolved in a process.

    :param register: ``register(scheme, factory)``; ``factory(url)`` returns a backend object
        (the protocol is defined by apt-plugin-cloud, which consumes it).
    :return: ignored.
    """


@hookspec
def apt_register_exporters(register):
    """Register export formats for ``apt-model export --format NAME``.

    Called the first time an exporter is looked up in a process.

    :param register: ``register(name, exporter)``; ``exporter(checkpoint, out, **options)`` writes
        the exported model under the directory ``out`` and returns its path.
    :return: ignored.
    """


# ---------------------------------------------------------------------------------------------
# Training lifecycle (fired by apt_core.training.Trainer, which every training loop uses)
# ---------------------------------------------------------------------------------------------


@hookspec
def apt_train_start(trainer):
    """Training is about to start (or resume).

    Called once per run, after the model, optimizer and data are ready and before the first step.

    :param trainer: the :class:`apt_core.training.Trainer` (``.model``, ``.args``, ``.state``,
        ``.out_dir``).
    :return: ignored.
    """


@hookspec
def apt_train_step_end(trainer, step, metrics):
    """An optimizer step finished.

    Called after every optimizer step (after gradient accumulation), on every rank.
    Keep it cheap: it runs inside the training loop.

    :param trainer: the running trainer.
    :param step: the global step just completed (1-based).
    :param metrics: a dict of floats known at this step (may be empty between logging intervals).
    :return: ignored.
    """


@hookspec
def apt_evaluate_end(trainer, metrics):
    """An evaluation finished.

    Called after each periodic or final evaluation.

    :param trainer: the running trainer.
    :param metrics: a dict with at least ``eval_loss`` and ``eval_perplexity``.
    :return: ignored.
    """


@hookspec
def apt_checkpoint_saved(trainer, path):
    """A checkpoint directory is complete on disk.

    Called after the checkpoint was renamed into place and the run's ``latest`` pointer updated,
    on the rank that wrote it. The directory will not change afterwards, so it is safe to copy
    in the background (retention may delete it later).

    :param trainer: the running trainer.
    :param path: the :class:`pathlib.Path` of the checkpoint directory.
    :return: ignored.
    """


@hookspec
def apt_train_end(trainer, metrics):
    """Training completed.

    Called once after the last step of a run that completed (not after a failure), after the
    final checkpoint was saved. A plugin may block here to finish background work.

    :param trainer: the trainer.
    :param metrics: a dict of final metrics (``train_loss``, ``eval_perplexity`` if evaluated …).
    :return: ignored.
    """
