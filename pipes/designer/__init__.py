"""The designer: the pages where business users create, import, export and look over their processes.

Every write goes through the design service (pipes.design); this area only parses, calls and renders."""
