"""Every fixed bound of the audience code, in one place (README "Audiences": the limits).

The SPEC names none of these as a setting, so they are constants, not environment variables: the
upload's size is the one configurable bound (`MAILER_MAX_UPLOAD_MB`, in `settings.py`). Each
module that applies a bound imports it from here.
"""

from __future__ import annotations

# --- names and texts anyone types -----------------------------------------------------------------
NAME_MAX = 200  # characters of a list's, a segment's or a contact's name
DESCRIPTION_MAX = 2000  # characters of a list's description
SEARCH_MAX = 200  # characters of a members' or contacts' search
FORM_FIELD_MAX = 320  # characters of a public form's field (an address is at most 254)

# --- importing a CSV into a list --------------------------------------------------------------------
HEAD_BYTES = 64 * 1024  # the head read to check a file (encoding, binary, delimiter) before queueing
MAX_COLUMNS = 100  # an address, a name and attributes
VALUE_MAX = 2000  # characters of one attribute value; a longer one rejects its row
CELL_LIMIT = 1024 * 1024  # a cell larger than this stops the file (csv's own limit)
BATCH_ROWS = 5000  # rows checked against the suppression list and staged at once; progress saved per batch
SQLITE_BATCH = 1000  # rows per executemany on SQLite
CHUNK_BYTES = 1024 * 1024  # one row of import_chunks: few rows, each small enough to hold in memory
IMPORT_TTL = 7 * 24 * 3600  # seconds an import's record, rejected rows and unused upload are kept
ERRORS_SHOWN = 200  # rejected rows listed on the result page (all are in the CSV)

# --- pages ------------------------------------------------------------------------------------------
MEMBERS_PER_PAGE = 50
CONTACTS_PER_PAGE = 50
SENT_SHOWN = 100  # campaigns sent, on a contact's page
BOUNCES_SHOWN = 100  # bounces, on a contact's page
GROWTH_DAYS = 30  # the lists page's growth column

# --- segments and campaign targets ------------------------------------------------------------------
MAX_CONDITIONS = 50  # in the whole filter, groups' conditions included
MAX_IN_VALUES = 100  # values of one "in a set" condition
MAX_TEXT = 200  # characters of one condition's value
MAX_DAYS = 3650  # "in the last N days"
SAMPLE_SIZE = 10  # contacts in a segment's sample
MAX_TARGETS = 20  # lists and segments one campaign names

# --- the public subscription form -------------------------------------------------------------------
MIN_FILL_SECONDS = 3  # a form sent back sooner is a bot's
STAMP_MAX_AGE = 24 * 3600  # seconds a served form stays valid
