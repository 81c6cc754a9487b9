"""Everything that talks to the Hub: the client (`client.Hub`), the session that picks the endpoint and
token (`session`), the guarded child push (`safe_push`), blob checks of a pull (`blob_check`), the Space's
folder and local server (`space`), and the check that the pushed child loads and chats (`verify`).

May import: config, errors, device, run/ (atomic files), breeders (verify asks how a child loads), and
localhub (the embedded endpoint). Never the pipeline, the search or the card.
"""
