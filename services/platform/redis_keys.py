"""Every Redis key the services use, in one place (the layouts were spread over three modules).

Each service owns its keys (writes them); others may read them through that owner's repository
module: searches - ``services/searcher/store.py``; trials and runners -
``services/trial_runner/app.py``; offline dataset and knowledge - ``services/knowledge/store.py``.
"""

# searcher: one msgpack state per search (+ ":published" outbox mark), indexes and locks
SEARCH_STATE = "falcon:search:{}"
SEARCH_INDEX = "falcon:searches"               # sorted set: search id -> creation time
SEARCH_OPEN = "falcon:searches:open"           # set of running search ids
SEARCH_LOCK = "falcon:lock:search:{}"
SEARCHER_INITIALISED = "falcon:searcher:initialised"   # absent: Redis new or wiped, rebuild from the log

# trial runners: claims with a lease, stored results, run counts, advertised capabilities
TRIAL_CLAIM = "falcon:trial:{}:claim"
TRIAL_RESULT = "falcon:trial:{}:result"
TRIAL_PUBLISHED = "falcon:trial:{}:published"   # the stored result reached the broker
TRIAL_RUNS = "falcon:trial-runs"                # hash: trial id -> how many times a backend really ran it
RUNNER_INITIALISED = "falcon:trial-runner:initialised"
RUNNER_ADVERT = "falcon:runner:{}"              # a live runner's classes and capabilities (expiring)

# treebuilder: the offline dataset (one key per table, an index, a version) and the knowledge per space
OFFLINE_TABLE = "falcon:offline:table:{}:{}"    # kind, name
OFFLINE_INDEX = "falcon:offline:index"          # hash: "<kind>:<name>" -> content hash
OFFLINE_VERSION = "falcon:offline:version"      # bumped whenever the dataset's content changes
KNOWLEDGE = "falcon:knowledge:{}"               # space fingerprint -> msgpack {"version", "knowledge"}
KNOWLEDGE_TREE_JSON = "falcon:trees:{}:{}"      # space fingerprint, operator -> JSON export of its tree
KNOWLEDGE_SPACES = "falcon:knowledge:spaces"    # hash: space fingerprint -> space (JSON): spaces searches use
