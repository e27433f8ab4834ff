# The build plan of the Cloud Native Buildpacks of one build, resolved as the buildpack spec's
# detect phase does. Run by build.sh in the build container with the stack's python3 (tomllib
# reads TOML) after every buildpack's bin/detect has written its plan:
#
#   python3 cnb-plan.py MARKER NAME PLAN [NAME PLAN]...
#
# Each PLAN may offer alternatives (`[[or]]`); the first combination, in order, where every
# `requires` is provided by the same or an earlier buildpack and every `provides` is required
# by the same or a later one is the plan. Each buildpack's bin/build then gets, in
# PLAN.entries, one `[[entries]]` per requirement of what it provides. Prints the plan for the
# user, or a control line saying why there is none and exits 1.
import itertools
import json
import sys
import tomllib


def fail(marker, message):
    print(f"{marker} plan-failed {message}")
    sys.exit(1)


def alternatives(data):
    plans = [data] + list(data.get("or", []))
    return [
        {
            "provides": [entry["name"] for entry in plan.get("provides", [])],
            "requires": list(plan.get("requires", [])),
        }
        for plan in plans
    ]


def problem(names, choice):
    """Why this combination is not a plan, or None."""
    for i, plan in enumerate(choice):
        for required in plan["requires"]:
            if not any(required["name"] in earlier["provides"] for earlier in choice[: i + 1]):
                return f"{names[i]} requires `{required['name']}` and no buildpack before it provides it"
        for provided in plan["provides"]:
            later = (required["name"] for after in choice[i:] for required in after["requires"])
            if provided not in later:
                return f"{names[i]} provides `{provided}` and no buildpack after it requires it"
    return None


def value(item):
    """A TOML inline value."""
    if isinstance(item, bool):
        return "true" if item else "false"
    if isinstance(item, (int, float)):
        return repr(item)
    if isinstance(item, str):
        return json.dumps(item)
    if isinstance(item, list):
        return "[" + ", ".join(value(element) for element in item) + "]"
    if isinstance(item, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {value(v)}" for k, v in item.items()) + "}"
    return json.dumps(str(item))


def main():
    marker = sys.argv[1]
    names = sys.argv[2::2]
    paths = sys.argv[3::2]
    options = []
    for name, path in zip(names, paths):
        try:
            with open(path, "rb") as plan:
                data = tomllib.load(plan)
            options.append(alternatives(data))
        except (tomllib.TOMLDecodeError, KeyError, TypeError, AttributeError) as error:
            fail(marker, f"{name} wrote an invalid build plan: {error}")
    first_problem = None
    for choice in itertools.product(*options):
        why = problem(names, choice)
        if why is None:
            break
        first_problem = first_problem or why
    else:
        fail(marker, first_problem)
    for i, plan in enumerate(choice):
        lines = []
        for provided in plan["provides"]:
            users = [
                names[j]
                for j in range(i, len(choice))
                if any(required["name"] == provided for required in choice[j]["requires"])
            ]
            print(f"-----> Build plan: {names[i]} provides `{provided}` for {', '.join(users)}")
            for later in choice[i:]:
                for required in later["requires"]:
                    if required["name"] == provided:
                        lines.append("[[entries]]")
                        lines.append(f"name = {json.dumps(provided)}")
                        lines.append(f"metadata = {value(required.get('metadata', {}))}")
        with open(paths[i] + ".entries", "w") as entries:
            entries.write("\n".join(lines) + "\n" if lines else "")


main()
