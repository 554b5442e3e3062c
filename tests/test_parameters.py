"""Each step's parameters are declared once: CLI flags = component inputs = pipeline parameters.

Names, types and defaults are compared for every step, as kfp compiles them
(the component spec and the pipeline's IR YAML) and as argparse parses them.
"""

import argparse

import pytest
import yaml

import pipeline
from commands.cli import compile_pipeline
from commands import cli
from commands.arguments import parse_params
from components import evaluate, ingest, new_data, publish, train, tune, validate
from components._step import flag
from mlp_core.blessing import DEFAULT_THRESHOLD, DEFAULT_TOLERANCE
from mlp_core.config import TrainConfig

# Step inputs the DAG fills itself (another step's output, a placeholder, a compile option): no pipeline parameters.
WIRED = {"run_id", "require_gpu", "trainer_job", "image", "champion_version", "population", "best_hyperparameters"}
# kfp's parameter types (IR names) and the Python types the flags parse with.
KFP_TYPES = {"String": str, "Integer": int, "Float": float, "Boolean": bool}
IR_TYPES = {"STRING": str, "NUMBER_INTEGER": int, "NUMBER_DOUBLE": float, "BOOLEAN": bool}

# Flags a step's command line has beyond its component's parameters: artifact paths, and what only a
# terminal needs. Anything else on a CLI must be a component input.
CLI_ONLY = {
    ingest: {"--output", "--no-progress"},
    train: {"--dataset", "--model", "--metrics", "--tensorboard", "--checkpoint-dir", "--coordinator", "--num-processes",
            "--process-id",
            "--coordinator-timeout", "--heartbeat-timeout"},
    evaluate: {"--model", "--dataset", "--metrics", "--report", "--report-markdown"},
    publish: {"--model", "--model-uri", "--statistics", "--schema", "--test-metrics", "--metrics-by-hand", "--test-accuracy",
              "--test-loss"},
    new_data: {"--dataset"},
    validate: {"--dataset", "--statistics", "--anomalies", "--output-schema", "--report", "--report-markdown"},
}
STEP_MODULES = [ingest, new_data, validate, train, evaluate, publish]


def _component_parameters(module) -> dict:
    """name -> (type, default, required) of the compiled component's plain-value inputs."""
    inputs = module.component("registry.example/img:1").component_spec.inputs
    return {name: (KFP_TYPES[spec.type], spec.default, spec.default is None and not spec.optional)
            for name, spec in inputs.items() if spec.type in KFP_TYPES}


def _tune_parameters() -> list[dict]:
    """``_component_parameters`` of each of the tune step's components."""
    types = {**KFP_TYPES, "Dict": dict}  # a population: one item of the plan's list (dsl.ParallelFor)
    return [{name: (types[spec.type], spec.default, spec.default is None and not spec.optional)
             for name, spec in (c.component_spec.inputs or {}).items() if spec.type in types}
            for c in tune.components("registry.example/img:1")]


def test_the_tune_command_line_has_the_tune_components_parameters():
    flags = _flags(tune._parser())
    inputs = {name: spec for c in _tune_parameters() for name, spec in c.items() if name != "population"}
    for name, (kind, default, _) in inputs.items():
        action = flags[flag(name)]
        assert action.dest == name and _flag_type(action) is kind, name
        # trials: 0 in the pipeline (no tuning), 16 on the command line, which exists to tune
        assert action.default == default or (name, action.default) == ("trials", 16), name
    assert set(flags) - {flag(n) for n in inputs} == {"--dataset", "--best-hyperparameters", "--report",
                                                      "--report-markdown", "--tensorboard"}


def _flags(parser: argparse.ArgumentParser) -> dict:
    """--flag -> its argparse action."""
    return {a.option_strings[0]: a for a in parser._actions if a.option_strings and a.dest != "help"}


def _flag_type(action) -> type:
    return bool if isinstance(action, argparse.BooleanOptionalAction) else action.type or str


@pytest.mark.parametrize("module", STEP_MODULES, ids=lambda m: m.__name__)
def test_cli_flags_are_the_component_inputs(module):
    component = _component_parameters(module)
    flags = _flags(module._parser())
    for name, (kind, default, required) in component.items():
        action = flags.get(flag(name))
        assert action is not None, f"{module.__name__}: component input {name} has no flag {flag(name)}"
        assert action.dest == name
        assert _flag_type(action) is kind, f"{flag(name)}: {_flag_type(action)} vs component {kind}"
        assert action.required == required, flag(name)
        if not required:
            assert action.default == default and type(action.default) is type(default), flag(name)
    extra = set(flags) - {flag(name) for name in component}
    assert extra == CLI_ONLY[module], f"{module.__name__}: flags that are no component input: {extra - CLI_ONLY[module]}"


def test_pipeline_parameters_are_the_steps_parameters(tmp_path):
    compile_pipeline(tmp_path / "p.yaml", options=None)
    compiled = yaml.safe_load((tmp_path / "p.yaml").read_text())["root"]["inputDefinitions"]["parameters"]
    expected = {}
    for inputs in [*map(_component_parameters, STEP_MODULES), *_tune_parameters()]:
        for name, (kind, default, required) in inputs.items():
            if name not in WIRED:
                expected.setdefault(name, (kind, default))
    assert set(compiled) == set(expected)
    for name, spec in compiled.items():
        kind, default = expected[name]
        assert IR_TYPES[spec["parameterType"]] is kind, name
        assert kind(spec["defaultValue"]) == default, name  # the IR writes integers as floats
        assert spec["description"], f"pipeline parameter {name} has no description"
    # Every wired input is an input of some step, and filled by the DAG (not left to a default).
    all_inputs = {name for inputs in [*map(_component_parameters, STEP_MODULES), *_tune_parameters()]
                  for name in inputs}
    assert WIRED <= all_inputs


def test_pipeline_run_flags_and_params_are_the_pipeline_parameters():
    parameters = pipeline.pipeline_parameters()
    run = next(a for a in cli._parser()._actions if isinstance(a, argparse._SubParsersAction)).choices["run"]
    flags = _flags(run)
    for name, p in parameters.items():
        action = flags[flag(name)]
        assert action.dest == name and _flag_type(action) is p.annotation and action.default is None
    assert set(flags) - {flag(n) for n in parameters} == {"--pipeline-root", "--runner", "--image", "--gpus", "--resume",
                                                          "--verbose"}
    typed = parse_params([f"{name}={p.default}" for name, p in parameters.items() if p.default != ""])
    assert all(type(v) is parameters[k].annotation for k, v in typed.items())


def test_defaults_agree_with_the_library():
    """A step's literal defaults are the library's: the seed's TrainConfig, the blessing and drift thresholds."""
    from mlp_core.data.validation import DEFAULT_MAX_LABEL_LINF, DEFAULT_MAX_LEAKED_IMAGES, DEFAULT_MAX_PIXEL_JS

    config = TrainConfig()
    params = pipeline.pipeline_parameters()
    expected = {"step_size": config.step_size, "batch_size": config.batch_size, "epochs": config.epochs,
                "seed": config.seed, "shuffle": config.shuffle, "hidden_sizes": config.hidden_sizes,
                "blessing_threshold": DEFAULT_THRESHOLD, "blessing_tolerance": DEFAULT_TOLERANCE,
                "max_label_linf": DEFAULT_MAX_LABEL_LINF, "max_pixel_js": DEFAULT_MAX_PIXEL_JS,
                "max_leaked_images": DEFAULT_MAX_LEAKED_IMAGES}
    assert {name: params[name].default for name in expected} == expected


def _library_functions():
    from mlp_core.data.ingest import ingest as ingest_library

    return [(ingest.ingest, ingest_library)]


def test_each_steps_library_function_takes_its_parameters_and_defaults_none_of_them():
    """The step's work takes the step's parameters; the step's declaration stays the one home of every default."""
    import inspect

    from components._step import parameters

    for step, library in _library_functions():
        accepted = inspect.signature(library).parameters
        for name, p in parameters(step).items():
            assert name in accepted, f"{library.__name__} does not take {step.__name__}'s parameter {name}"
            assert accepted[name].default is inspect.Parameter.empty, f"{library.__name__} defaults {name} again"
            assert accepted[name].annotation in (p.annotation, p.annotation.__name__), name
