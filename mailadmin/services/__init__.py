"""State changes of the product. Each public function validates, changes and commits once;
views, jobs and the CLI all call these functions rather than touching models directly."""
