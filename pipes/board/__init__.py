"""The board: the kanban pages of a pipe, the card side panel and the home page (views), their own reads
(selectors) and URLs. Shared reads (getters, board schema, card details) stay in pipes.selectors."""
