"""Word pools for the synthetic tasks (hydralm.data.synth). Data only; docs/data.md explains how
they are combined. Pools are `|`-separated to keep this file readable."""

from __future__ import annotations

__all__ = ["AREAS", "SETTINGS", "SIGNATURE_ADJECTIVES", "TAGS", "TAG_CUES", "TITLE_STYLES"]


def _pool(text: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in text.split("|"))


# LaMP-2M's 15 tags, in LaMP's order.
TAGS: tuple[str, ...] = (
    "sci-fi", "based on a book", "comedy", "action", "twist ending", "dystopia", "dark comedy",
    "classic", "psychology", "fantasy", "romance", "thought-provoking", "social commentary",
    "violence", "true story",
)

# Per tag: who (subjects), what happens (events: third person, fit "X ..." and "X, who ..."), and
# mood adjectives. A description mixes the cues of several tags.
TAG_CUES: dict[str, dict[str, tuple[str, ...]]] = {
    "sci-fi": {
        "subjects": _pool("a starship engineer|an android caretaker|a xenobiologist|the crew of "
                          "a deep-space freighter|a time-travelling physicist|a colony pilot|an "
                          "orbital station medic|a rogue artificial intelligence"),
        "events": _pool("decodes an alien signal from a distant galaxy|repairs a failing warp "
                        "drive|wakes from cryosleep decades too late|builds a machine that bends "
                        "time|makes first contact with a silicon lifeform|charts a wormhole near "
                        "Jupiter|uploads a mind into a quantum computer|terraforms a frozen moon"),
        "moods": _pool("futuristic|cosmic|high-tech|interstellar|cybernetic"),
    },
    "based on a book": {
        "subjects": _pool("a novelist's heroine|the narrator of the bestselling novel|a "
                          "bookseller|an author's young protagonist|a literary orphan|the "
                          "beloved character from the classic novel|a memoirist|a chapter-book "
                          "detective"),
        "events": _pool("follows the novel's chapters faithfully|brings a beloved bestseller to "
                        "the screen|relives the pages of the acclaimed novel|narrates the story "
                        "from the original book|adapts the prize-winning novel's plot|inherits "
                        "the manuscript of a famous author|retraces the saga of the book "
                        "series|mirrors the novel's famous opening line"),
        "moods": _pool("literary|novelistic|faithfully adapted|bookish|storybook"),
    },
    "comedy": {
        "subjects": _pool("a clumsy wedding planner|two bickering roommates|a hapless "
                          "substitute teacher|an overconfident salesman|a chaotic family on "
                          "vacation|a stand-up comedian|a goofy mail carrier|a pair of slacker "
                          "cousins"),
        "events": _pool("mixes up the invitations in hilarious fashion|trips into one zany "
                        "mishap after another|pranks the whole office|gets stuck in a ridiculous "
                        "costume|bungles a road trip with slapstick gags|hosts a disastrous "
                        "dinner party full of laughs|fakes an accent to win a bet|wins a goofy "
                        "talent show by accident"),
        "moods": _pool("hilarious|lighthearted|goofy|witty|zany"),
    },
    "action": {
        "subjects": _pool("an ex-special forces commando|a getaway driver|a bodyguard|a rogue "
                          "secret agent|a SWAT captain|a martial artist|a stunt pilot|a mercenary "
                          "squad"),
        "events": _pool("races through explosive car chases|fights across rooftops in a "
                        "shootout|defuses a bomb with seconds left|storms a fortified compound|"
                        "escapes a helicopter ambush|battles henchmen in a high-speed train|"
                        "parachutes behind enemy lines|leads a daring heist rescue"),
        "moods": _pool("explosive|adrenaline-fueled|high-octane|pulse-pounding|relentless"),
    },
    "twist ending": {
        "subjects": _pool("an unreliable narrator|a grieving widower|an amnesiac stranger|a "
                          "magician|a twin sister|a psychiatrist with a secret|a hotel guest|an "
                          "heir with a hidden past"),
        "events": _pool("learns in the final scene that nothing was as it seemed|discovers the "
                        "shocking truth about their own identity|uncovers a secret that flips "
                        "the whole story|realizes the ghost was them all along|sees the last "
                        "reveal upend every clue|finds the final revelation rewrites the past|"
                        "is stunned when the mastermind is revealed|unravels a surprise that "
                        "changes everything"),
        "moods": _pool("mind-bending|surprising|shocking|puzzling|deceptive"),
    },
    "dystopia": {
        "subjects": _pool("a rebel in a totalitarian state|a surveillance officer|a ration-"
                          "card clerk|a citizen of the walled city|a resistance courier|a "
                          "conscript of the regime|an outcast beyond the wall|a factory worker "
                          "under martial law"),
        "events": _pool("defies the all-seeing regime|escapes the oppressive surveillance "
                        "state|smuggles banned books past the thought police|resists the "
                        "authoritarian government's curfew|survives in a bleak collapsed "
                        "society|exposes the propaganda ministry|joins an underground "
                        "uprising against the dictator|flees the totalitarian megacity"),
        "moods": _pool("bleak|oppressive|authoritarian|grim|post-apocalyptic"),
    },
    "dark comedy": {
        "subjects": _pool("a morbid funeral director|an inept hitman|a cynical insurance "
                          "clerk|a family of incompetent criminals|a sarcastic undertaker|a "
                          "deadpan coroner|a bumbling blackmailer|a misanthropic dentist"),
        "events": _pool("botches a murder with absurd consequences|hides a corpse at a "
                        "family reunion|jokes through a macabre funeral|turns a burial into "
                        "a farce|laughs at death with grim irony|covers up an accidental "
                        "killing badly|schemes to inherit with gallows humor|fumbles a "
                        "morbid scheme with deadpan wit"),
        "moods": _pool("morbid|macabre|darkly funny|sardonic|twisted"),
    },
    "classic": {
        "subjects": _pool("a Hollywood golden-age starlet|a silent-film tramp|a black-and-"
                          "white era gangster|a 1940s newspaperman|a matinee idol|a studio-era "
                          "cowboy|a vintage screen siren|a timeless film noir detective"),
        "events": _pool("stars in a timeless black-and-white masterpiece|defines a golden-age "
                        "Hollywood legend|shines in a landmark of early cinema|headlines an "
                        "enduring studio-era epic|delivers an iconic line for the ages|appears "
                        "in a celebrated vintage film|anchors a restored cinema classic|"
                        "leads a beloved film of the 1940s"),
        "moods": _pool("timeless|iconic|vintage|legendary|golden-age"),
    },
    "psychology": {
        "subjects": _pool("a troubled psychiatrist|a patient with multiple personalities|an "
                          "obsessive therapist|a traumatized veteran|a paranoid insomniac|a "
                          "hypnotist|a behavioral scientist|a man haunted by his memories"),
        "events": _pool("probes the depths of a fractured mind|confronts repressed trauma in "
                        "therapy|spirals into obsession and paranoia|studies the limits of "
                        "human perception|battles a haunting mental illness|explores memory "
                        "and identity in sessions|questions their own sanity|analyses a "
                        "disturbing recurring dream"),
        "moods": _pool("psychological|introspective|unsettling|cerebral|haunting"),
    },
    "fantasy": {
        "subjects": _pool("a young wizard|an elven archer|a dragon rider|an enchanted "
                          "princess|a dwarf blacksmith|a sorceress|a shapeshifting fox|a knight "
                          "of the realm"),
        "events": _pool("casts a forbidden spell to save the kingdom|quests for a magical "
                        "amulet|tames a fire-breathing dragon|breaks an ancient curse|enters an "
                        "enchanted forest of talking beasts|battles a dark sorcerer for the "
                        "throne|forges a sword of legend|travels to a mythical realm"),
        "moods": _pool("magical|enchanted|mythical|spellbinding|fairy-tale"),
    },
    "romance": {
        "subjects": _pool("two star-crossed lovers|a lonely florist|a widowed baker|a pair "
                          "of old flames|a shy violinist|a wedding photographer|a couple of "
                          "pen pals|a heartbroken bride"),
        "events": _pool("falls in love during a summer in Paris|rekindles a lost romance|"
                        "writes love letters to a stranger|chooses between two suitors|shares "
                        "a first kiss under the rain|finds a soulmate at a bookshop|risks "
                        "everything for true love|dances with a secret admirer"),
        "moods": _pool("romantic|heartwarming|tender|passionate|bittersweet"),
    },
    "thought-provoking": {
        "subjects": _pool("a philosopher|a dying scientist|a village priest|a chess "
                          "prodigy|an ethicist|a mathematician|a monk|a reclusive poet"),
        "events": _pool("ponders the meaning of existence|wrestles with a profound moral "
                        "dilemma|questions what makes us human|confronts the nature of free "
                        "will|reflects on mortality and purpose|challenges everything "
                        "about truth and belief|asks what a good life is|debates faith and "
                        "reason"),
        "moods": _pool("profound|contemplative|philosophical|provocative|meditative"),
    },
    "social commentary": {
        "subjects": _pool("a factory union organizer|a housing activist|a migrant worker|an "
                          "investigative reporter|a public-school teacher|a satirist|a "
                          "community nurse|a welfare caseworker"),
        "events": _pool("exposes inequality and class divides|critiques corporate greed|"
                        "fights systemic racism in the city|confronts poverty and "
                        "gentrification|lays bare a broken welfare system|satirizes "
                        "consumer culture|challenges media manipulation|rallies workers "
                        "against exploitation"),
        "moods": _pool("satirical|incisive|topical|critical|socially conscious"),
    },
    "violence": {
        "subjects": _pool("a brutal gang enforcer|a vengeful hitwoman|a serial killer|a cartel "
                          "lieutenant|a bloodthirsty warlord|a prison fighter|a psychopathic "
                          "thug|a vigilante butcher"),
        "events": _pool("leaves a trail of bloody massacres|wages a savage gang war|tortures "
                        "rivals in gruesome detail|carries out a brutal revenge killing|"
                        "unleashes graphic carnage on the streets|slaughters an entire "
                        "crime family|beats enemies in vicious fights|stages a bloodbath "
                        "in the cartel's mansion"),
        "moods": _pool("brutal|gory|savage|bloody|graphic"),
    },
    "true story": {
        "subjects": _pool("a real-life whistleblower|a wartime codebreaker|an Olympic "
                          "athlete|a pioneering surgeon|a civil-rights lawyer|an astronaut of "
                          "the Apollo era|a mountaineer|a journalist in 1970s Washington"),
        "events": _pool("recounts the real events of a historic trial|is based on the true "
                        "story of a daring rescue|dramatizes a documented wartime mission|"
                        "chronicles a real scientific breakthrough|retells a true account from "
                        "the headlines|reconstructs the actual events of a famous "
                        "expedition|follows a biography of a real pioneer|depicts the true "
                        "history of a landmark case"),
        "moods": _pool("biographical|historical|fact-based|documentary-style|real-life"),
    },
}

SETTINGS: tuple[str, ...] = _pool(
    "in 1970s Chicago|in a small coastal town|in present-day Tokyo|on a remote island|in post-war "
    "London|in a sprawling megacity|in rural Montana|in a crumbling Italian villa|aboard a "
    "cruise ship|in the suburbs of Paris|in a snowbound mountain village|in a desert border town")

# The synthetic title task (LaMP-5 style). Each research area: problems, application domains,
# method nouns, datasets, and what a method does.
AREAS: dict[str, dict[str, tuple[str, ...]]] = {
    "nlp": {
        "problems": _pool("named entity recognition|machine translation|question answering|text "
                          "summarization|sentiment analysis|dependency parsing"),
        "domains": _pool("clinical notes|legal contracts|social media posts|low-resource "
                         "languages|scientific articles"),
        "methods": _pool("transformer encoder|sequence-to-sequence model|retrieval-augmented "
                         "language model|contrastive pretraining scheme|span-based tagger"),
        "datasets": _pool("CoNLL-2003|SQuAD|WMT benchmarks|XSum|SST-2"),
    },
    "vision": {
        "problems": _pool("object detection|semantic segmentation|image captioning|depth "
                          "estimation|pose estimation|visual tracking"),
        "domains": _pool("aerial imagery|medical scans|autonomous driving scenes|satellite "
                         "images|microscopy"),
        "methods": _pool("convolutional backbone|vision transformer|diffusion model|feature "
                         "pyramid network|self-supervised encoder"),
        "datasets": _pool("COCO|ImageNet|Cityscapes|KITTI|ADE20K"),
    },
    "rl": {
        "problems": _pool("policy optimization|exploration|offline reinforcement learning|"
                          "multi-agent coordination|reward shaping|continuous control"),
        "domains": _pool("robotic manipulation|video games|traffic control|recommendation "
                         "systems|energy grids"),
        "methods": _pool("actor-critic algorithm|model-based planner|value decomposition "
                         "network|curiosity module|hierarchical policy"),
        "datasets": _pool("Atari|MuJoCo|D4RL|StarCraft II|Meta-World"),
    },
    "graphs": {
        "problems": _pool("node classification|link prediction|community detection|graph "
                          "generation|subgraph matching|influence maximization"),
        "domains": _pool("citation networks|molecular graphs|knowledge graphs|social "
                         "networks|road networks"),
        "methods": _pool("graph neural network|message passing scheme|spectral embedding|"
                         "graph transformer|random-walk sampler"),
        "datasets": _pool("Cora|OGB|PubMed|Reddit|ZINC"),
    },
    "systems": {
        "problems": _pool("distributed training|query optimization|cache management|load "
                          "balancing|fault tolerance|stream processing"),
        "domains": _pool("data centers|edge devices|cloud databases|GPU clusters|serverless "
                         "platforms"),
        "methods": _pool("scheduling algorithm|learned index|consensus protocol|compiler "
                         "pass|memory allocator"),
        "datasets": _pool("TPC-H|YCSB|production traces|MLPerf|SPEC CPU"),
    },
    "security": {
        "problems": _pool("malware detection|intrusion detection|adversarial robustness|"
                          "privacy-preserving learning|fuzzing|side-channel analysis"),
        "domains": _pool("mobile apps|smart contracts|IoT firmware|web browsers|federated "
                         "systems"),
        "methods": _pool("differential privacy mechanism|anomaly detector|symbolic "
                         "executor|certified defense|binary analyzer"),
        "datasets": _pool("DARPA traces|Android malware corpora|CIC-IDS|Ethereum contracts|"
                          "OSS-Fuzz targets"),
    },
    "bio": {
        "problems": _pool("protein structure prediction|gene expression analysis|drug "
                          "discovery|variant calling|cell type annotation|sequence alignment"),
        "domains": _pool("single-cell data|genomic sequences|electronic health records|"
                         "protein families|microbiome samples"),
        "methods": _pool("deep generative model|Bayesian hierarchical model|attention-based "
                         "predictor|kernel method|variational autoencoder"),
        "datasets": _pool("UniProt|TCGA|CASP|GTEx|MIMIC-III"),
    },
    "robotics": {
        "problems": _pool("motion planning|grasp synthesis|simultaneous localization and "
                          "mapping|legged locomotion|sim-to-real transfer|human-robot "
                          "interaction"),
        "domains": _pool("warehouse robots|quadrupeds|surgical robots|drones|household "
                         "assistants"),
        "methods": _pool("trajectory optimizer|imitation learning framework|visuomotor "
                         "policy|tactile sensing model|model predictive controller"),
        "datasets": _pool("YCB objects|real-robot trials|Habitat|RoboNet|EuRoC"),
    },
}

# A user's signature: one title style and one favourite adjective.
# Slots: {acronym} {adj} {method} {problem} {domain} (title-cased when filled).
TITLE_STYLES: tuple[str, ...] = (
    "{acronym}: {adj} {method} for {problem}",
    "Towards {adj} {problem} in {domain}",
    "{problem} via {adj} {method}s",
    "A {adj} {method} for {problem} in {domain}",
    "On {adj} {problem}: Lessons from {domain}",
    "Learning {adj} {method}s for {domain}",
    "{adj} {problem} with {acronym}",
    "Rethinking {problem} for {domain}: A {adj} Approach",
)
SIGNATURE_ADJECTIVES: tuple[str, ...] = (
    "Efficient", "Robust", "Scalable", "Interpretable", "Lightweight", "Adaptive", "Provable",
    "Unified", "Fast", "Private",
)
