"""Parameters: the vocabulary the layers declare (:mod:`.vocabulary`), values as written
(:mod:`.values`), profiles (:mod:`.profiles`), the notebooks' parameter cells (:mod:`.notebooks`),
one value's checks (:mod:`.checks`) and the resolution of every notebook's values
(:mod:`.resolve`). Torch-free."""
from unirepclip.workbook.params.checks import PLACEHOLDER_PREFIX, check_value  # noqa: F401
from unirepclip.workbook.params.notebooks import (  # noqa: F401
    KERNEL_NAME, Notebook, NotebookParameter, default_notebooks_dir, default_value,
    discover_notebooks, inspect_notebook, inspect_notebooks, select)
from unirepclip.workbook.params.profiles import (  # noqa: F401
    PROFILES_DIR, check_folder_name, list_profiles, load_profile)
from unirepclip.workbook.params.resolve import (  # noqa: F401
    Request, expand_fields, overrides_dict, resolve_parameters)
from unirepclip.workbook.params.values import (  # noqa: F401
    ParameterError, YamlLoader, load_yaml, parse_override, parse_value)
from unirepclip.workbook.params.vocabulary import RESERVED, lookup, vocabulary  # noqa: F401
