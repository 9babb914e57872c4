package cache

// CtimeWindow is ctimeWindow for the tests of package cache_test: a save stamps only a tree
// whose latest change is at least that much older than the save.
const CtimeWindow = ctimeWindow
