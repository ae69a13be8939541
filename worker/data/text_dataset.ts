// Placeholder until the real-text dataset lands (issue 6); replaced by its owner.
export {};
