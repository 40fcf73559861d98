package manager

// MDLostOnly is mdLostOnly, for the external tests.
const MDLostOnly = mdLostOnly
