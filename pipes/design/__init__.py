"""Process design: the one service every design change goes through (see services.py)."""

from .services import (
    SYSTEM,
    DesignError,
    DesignPermissionError,
    administered_pipes,
    design_check,
    design_delete,
    design_grant,
    design_import,
    design_revoke,
    design_save,
    design_validate,
    designable,
    owned_organizations,
    people_for_designer,
    register_design_model,
)

__all__ = [
    "SYSTEM",
    "DesignError",
    "DesignPermissionError",
    "administered_pipes",
    "design_check",
    "design_delete",
    "design_grant",
    "design_import",
    "design_revoke",
    "design_save",
    "design_validate",
    "designable",
    "owned_organizations",
    "people_for_designer",
    "register_design_model",
]
