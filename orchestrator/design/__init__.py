"""The designer's pages for the rail's design objects: a phase's steps (with a dry run against a card),
a pipe's agents and its organization's allowed hosts. Every write goes through pipes.design's service."""
