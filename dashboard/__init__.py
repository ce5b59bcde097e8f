"""smithers-dashboard: Panel views and the param store that feeds them."""
