"""Process design: the one service every design change goes through (services.py), and process definitions
as files: the format's vocabulary and extensions (format.py), the checker (checker.py), YAML import/export
and the bundled templates (importexport.py, templates/*.yaml); a pipe's people through it (people.py).

The package re-exports the public names so callers import from `pipes.design`."""

from .checker import CONFIG_KEYS, definition_check
from .format import (
    FIELD_KEYS,
    PHASE_KEYS,
    PIPE_KEYS,
    VALIDATION_KEYS,
    DefinitionError,
    extensions,
    register_extension,
    unregister_extension,
)
from .importexport import (
    definition_dump,
    definition_load,
    pipe_export,
    pipe_import,
    process_template_load,
    process_templates,
)
from .people import design_grant, design_revoke
from .services import (
    SYSTEM,
    DesignError,
    DesignImpact,
    DesignImpactError,
    DesignPermissionError,
    administered_pipes,
    design_archive,
    design_check,
    design_delete,
    design_impact,
    design_import,
    design_restore,
    design_save,
    design_validate,
    designable,
    owned_organizations,
    people_for_designer,
    register_design_model,
)

__all__ = [
    "CONFIG_KEYS",
    "FIELD_KEYS",
    "PHASE_KEYS",
    "PIPE_KEYS",
    "VALIDATION_KEYS",
    "DefinitionError",
    "definition_check",
    "definition_dump",
    "definition_load",
    "extensions",
    "pipe_export",
    "pipe_import",
    "process_template_load",
    "process_templates",
    "register_extension",
    "unregister_extension",
    "SYSTEM",
    "DesignError",
    "DesignImpact",
    "DesignImpactError",
    "DesignPermissionError",
    "administered_pipes",
    "design_archive",
    "design_check",
    "design_delete",
    "design_impact",
    "design_grant",
    "design_import",
    "design_restore",
    "design_revoke",
    "design_save",
    "design_validate",
    "designable",
    "owned_organizations",
    "people_for_designer",
    "register_design_model",
]
