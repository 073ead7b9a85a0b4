DROP TYPE money_pair;
